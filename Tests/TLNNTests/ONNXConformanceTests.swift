import XCTest
import Glibc
@testable import TLCore
@testable import TLNN

/// Reads a file wholly.
func fileBytes(_ path: String) throws -> [UInt8] { try Input.open(path).reader().readToEnd() }

/// The repository root and `../shared`, when present.
let nnRepoRoot: String = {
    var p = #filePath
    for _ in 0..<3 { p = String(p[..<p.lastIndex(of: "/")!]) }
    return p
}()
let nnShared: String? = access(nnRepoRoot + "/../shared", F_OK) == 0 ? nnRepoRoot + "/../shared" : nil

func directoryEntries(_ dir: String) -> [String] {
    guard let d = opendir(dir) else { return [] }
    defer { closedir(d) }
    var out: [String] = []
    while let e = readdir(d) {
        let n = withUnsafeBytes(of: e.pointee.d_name) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
        if n != "." && n != ".." { out.append(n) }
    }
    return out.sorted()
}

/// One ONNX test case: a model and its data sets (inputs and expected outputs as TensorProto).
struct ONNXCase {
    let dir: String
    enum Outcome: Equatable { case passed, unsupported(String), wrong(String) }

    /// Runs the case as it is; if tl refuses it and the model has several inputs, runs it again
    /// with the inputs after the first bound to each data set's values as initializers. The
    /// node tests feed weights (a Conv's W, a Clip's min, a Reshape's shape) as inputs, while an
    /// exported network has them as constants, which is what tl requires: the same arithmetic.
    func run() -> Outcome {
        let model: ONNX.Model
        do {
            let bytes = try fileBytes(dir + "/model.onnx")
            model = try bytes.withUnsafeBytes { try ONNX.model($0) }
        } catch { return .wrong("unreadable model: \(error)") }
        let first = run(model, dataSets: directoryEntries(dir).filter { $0.hasPrefix("test_data_set_") }, bound: false)
        guard case .unsupported = first, model.graph.inputs.filter({ model.graph.initializers[$0.name] == nil }).count > 1 else { return first }
        var outcome = Outcome.passed
        for set in directoryEntries(dir).filter({ $0.hasPrefix("test_data_set_") }) {
            var m = model
            let ins = model.graph.inputs.filter { model.graph.initializers[$0.name] == nil }
            do {
                for (k, v) in ins.enumerated().dropFirst() {
                    let b = try fileBytes("\(dir)/\(set)/input_\(k).pb")
                    m.graph.initializers[v.name] = try b.withUnsafeBytes { try ONNX.tensor($0).1 }
                    m.graph.initializerNames.append(v.name)
                }
            } catch { return .wrong("\(set): unreadable input: \(error)") }
            m.graph.inputs = [ins[0]]
            let r = run(m, dataSets: [set], bound: true)
            if r != .passed { return r }
        }
        return outcome == .passed ? .passed : outcome
    }

    func run(_ model: ONNX.Model, dataSets sets: [String], bound: Bool) -> Outcome {
        let imported: ONNXImport.Result, graph: Graph
        do {
            imported = try ONNXImport.convert(model)
            graph = try Graph(imported.spec, inputShapes: imported.inputShapes, tensors: imported.tensors)
        } catch let e as TLError {
            // Refusing is allowed, wrongly computing is not: the reason must say what tl lacks.
            return .unsupported(e.description)
        } catch { return .wrong("\(error)") }
        for set in sets {
            do {
                var inputs: [String: Tensor] = [:]
                for (k, name) in imported.spec.inputs.enumerated() {
                    let b = try fileBytes("\(dir)/\(set)/input_\(k).pb")
                    inputs[name] = try b.withUnsafeBytes { try ONNX.tensor($0).1 }
                }
                for (k, o) in model.graph.outputs.enumerated() {
                    let b = try fileBytes("\(dir)/\(set)/output_\(k).pb")
                    let want = try b.withUnsafeBytes { try ONNX.tensor($0).1 }
                    let value = imported.spec.aliases[o.name] ?? o.name
                    let got = try graph.forward(inputs, until: value, Context(training: false, threads: 1))
                    guard got.shape == want.shape || got.count == want.count && want.shape.reduce(1, *) == got.count else {
                        return .wrong("\(set) output \(k): shape \(got.shape), expected \(want.shape)")
                    }
                    let w = try want.converted(to: .f64), gd = try got.converted(to: .f64)
                    for i in 0..<got.count {
                        let a = gd.double(at: i), e = w.double(at: i)
                        if a.isNaN && e.isNaN { continue }
                        if !(abs(a - e) <= 1e-4 + 1e-3 * abs(e)) { return .wrong("\(set) output \(k) [\(i)]: \(a), expected \(e)") }
                    }
                }
            } catch let e as TLError {
                if e.message.contains("not supported") || e.message.contains("tl does not") { return .unsupported(e.description) }
                return .wrong("\(set): \(e)")
            } catch { return .wrong("\(set): \(error)") }
        }
        return .passed
    }
}

final class ONNXConformanceTests: XCTestCase {
    /// The repository's own fixtures (Tests/fixtures/onnx, made by make_fixtures.py with
    /// onnxruntime's outputs): exporter-style graphs that must import and match.
    func testRepositoryFixtures() throws {
        let root = nnRepoRoot + "/Tests/fixtures/onnx"
        let cases = directoryEntries(root).filter { !$0.hasSuffix(".py") }
        XCTAssertEqual(cases.count, 2)
        for c in cases { XCTAssertEqual(ONNXCase(dir: "\(root)/\(c)").run(), .passed, c) }
        // The PyTorch flatten chain folds to a reshape that keeps the batch: any batch size runs.
        let model = try fileBytes(root + "/pytorch_flatten_chain/model.onnx").withUnsafeBytes { try ONNX.model($0) }
        let r = try ONNXImport.convert(model)
        XCTAssertEqual(r.spec.nodes.map(\.op), ["Conv", "Relu", "MaxPool", "Reshape", "Gemm", "Add", "LogSoftmax"])
        XCTAssertEqual(r.batched, [true])
        let g = try Graph(r.spec, inputShapes: [[7, 2, 6, 6]], tensors: r.tensors)
        XCTAssertEqual(g.shapes[r.spec.outputs[0]], [7, 5])
        // Nodes take their PyTorch module names where the weights tell them.
        XCTAssertTrue(r.spec.nodes.contains { $0.name == "conv" })
        // The default cut looks past the softmax and the bias to the classifier's input.
        let net = try Network(graph: r.spec, tensors: r.tensors, input: InputSpec(shape: [2, 6, 6]), classes: [])
        let cut = try net.cut(layer: nil, activation: true)
        XCTAssertEqual(cut.shape, [36]); XCTAssertEqual(net.graph!.description.nodes[net.graph!.node(cut.value!)!].op, "Reshape")
    }

    /// The ONNX project's backend node tests for the operators CNNs use (../shared/onnx-node-tests).
    func testNodeTests() throws {
        guard let shared = nnShared else { throw XCTSkip("../shared is absent: the ONNX node tests are not available (the repository's own fixtures still run)") }
        let root = shared + "/onnx-node-tests"
        var passed = 0, unsupported: [(String, String)] = [], wrong: [(String, String)] = []
        for suite in ["node", "pytorch-converted"] {
            for t in directoryEntries(root + "/" + suite) {
                switch ONNXCase(dir: "\(root)/\(suite)/\(t)").run() {
                case .passed: passed += 1
                case .unsupported(let why): unsupported.append((t, why))
                case .wrong(let why): wrong.append((t, why))
                }
            }
        }
        for (t, why) in wrong { XCTFail("\(t): \(why)") }
        // What was refused, and why (printed for the record; a refusal is not a wrong answer).
        print("onnx conformance: \(passed) passed, \(unsupported.count) refused, \(wrong.count) wrong")
        for (t, why) in unsupported { print("  refused \(t): \(why)") }
        XCTAssertGreaterThan(passed, 150)
    }
}
